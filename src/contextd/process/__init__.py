"""How contextd runs as processes: roles (api, worker, all), the migrate step, and how
command-line tools find the service that owns an embedded data directory."""
