"""Images the bot draws: personal posters (posters) and stats charts (charts)."""
