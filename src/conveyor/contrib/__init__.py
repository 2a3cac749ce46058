"""Integrations with web frameworks (Starlette/FastAPI, Django).

Nothing in conveyor's core imports this package: each module here imports its
framework and is used only by applications that have it installed.
"""
