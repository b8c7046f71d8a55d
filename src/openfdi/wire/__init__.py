"""FDI request/response models, with the field names and types the official SDK expects."""
