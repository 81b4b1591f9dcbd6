"""c2c packet trace: follow one request through the live Docker host, hop by hop."""
