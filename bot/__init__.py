"""partnerbot: the application (app factory, config, channels, router, jobs, CLI, simulator)."""
