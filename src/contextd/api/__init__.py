"""FastAPI app factory, routers (thin), auth dependencies and error mapping."""
