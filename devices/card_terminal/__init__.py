"""PrivatBank ECR (JSON based) bank card terminal: codec, driver, simulator."""
