"""Service state in SQL: the engine and migrations, documents, principals, API keys, audit,
costs, sessions, connectors and their runs, leases.

SQLModel on SQLite by default, PostgreSQL when ``CONTEXTD_DATABASE_URL`` says so.
"""
