"""What each OpenAI-compatible model server supports: probing, refusals understood, learned limits."""
