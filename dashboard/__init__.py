"""The ops dashboard: quota pressure, availability, fallbacks and what-if, behind the admin's login."""
