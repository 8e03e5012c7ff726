"""Developer tools: not imported by the services (the local GCP emulators live here)."""
