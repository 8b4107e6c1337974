"""Built-in plugins: ordinary plugins that ship inside ``localagent``."""
