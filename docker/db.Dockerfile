# PostgreSQL 16 with PostGIS 3.5 and pgvector: the app needs both extensions in one database, and no
# official image has both. The PostGIS image is Debian-based with the PostgreSQL apt repository
# configured, which packages pgvector for each server version.
FROM postgis/postgis:16-3.5
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-16-pgvector \
 && rm -rf /var/lib/apt/lists/*
