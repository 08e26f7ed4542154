"""Alembic's entry point: migrate on the connection (and in the transaction) `gateway.state.database` hands over."""

from alembic import context

context.configure(connection=context.config.attributes["connection"])
with context.begin_transaction():
    context.run_migrations()
