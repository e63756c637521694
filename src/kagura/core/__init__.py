"""The seed's layer: configuration, transports, call_llm and call_llm_stream."""
