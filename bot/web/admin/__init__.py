"""The admin HTTP API: tasks, leads, pools and settings (api), partners (partners), figures (stats)."""
