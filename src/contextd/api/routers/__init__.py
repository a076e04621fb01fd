"""Thin routers: parse, authorize through dependencies, call one service, shape the reply."""
