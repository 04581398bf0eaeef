"""The chat page: plain HTML, CSS and JS shipped in the package (no CDN), on the
conversations API."""
