"""Template filters of the dashboard (dashboard_format)."""
