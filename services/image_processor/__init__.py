"""image-processor: pulls tasks, renders images with Pillow, writes outputs, publishes results."""
