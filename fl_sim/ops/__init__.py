"""Running it: the simulation launcher, the deployment engine (processes, netns, TLS)."""
