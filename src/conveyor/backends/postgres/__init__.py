"""The PostgreSQL backend (needs psycopg 3 and psycopg_pool: `pip install 'conveyor[postgres]'`)."""
