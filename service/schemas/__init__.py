"""marshmallow schemas: what requests may carry (unknown fields refused), what responses hold."""
