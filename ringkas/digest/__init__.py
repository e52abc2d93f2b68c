"""Daily AI-news digests: feeds and team-shared links -> selected, model-written stories -> channels."""
