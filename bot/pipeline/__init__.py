"""The message pipeline: received messages in (inbox), routed to a handler (router), replies out
(outbox), within each channel's send limits (ratelimit)."""
