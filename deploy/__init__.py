"""Deployment assets; ``deploy.tools`` holds the operations commands shipped in the image."""
