"""Where Conveyor keeps what it knows: metadata in SQLite or PostgreSQL (SQLAlchemy Core) and
content-addressed blobs on the filesystem."""
