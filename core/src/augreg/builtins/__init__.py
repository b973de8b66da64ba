"""The built-in components (plugin ``core``), registered exactly like external plugins."""
