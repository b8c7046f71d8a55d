"""openfdi: a self-hostable data-integration service that speaks the ROMA Connect FDI API."""

__version__ = "0.1.0"
