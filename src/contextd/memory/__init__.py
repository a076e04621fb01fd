"""SQL state and memory: documents, principals, API keys (and later interactions, feedback).

SQLModel on SQLite by default, PostgreSQL when ``CONTEXTD_DATABASE_URL`` says so.
"""
