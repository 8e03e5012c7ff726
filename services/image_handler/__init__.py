"""image-handler: the public REST API (and, locally, the web page)."""
