"""ImageFlow core: settings, domain, messages, ports and adapters shared by the services."""
