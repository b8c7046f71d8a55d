"""Metadata store: SQLAlchemy tables (*Row), repositories, migrations, secrets at rest."""
