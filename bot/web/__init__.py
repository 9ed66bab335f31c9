"""What the bot serves over HTTP besides the platform callbacks: tracked links and clicks, the lead
form, invite pages, and the admin API (web/admin)."""
