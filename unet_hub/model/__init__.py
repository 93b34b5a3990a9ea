"""The network: its parts, its configuration, and saving and loading it (Hub mixin)."""
