"""Connectors (layer: store | connectors): the source/target plugins behind `connectors.spi`."""
