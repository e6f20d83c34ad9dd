"""Leaf, text: the tokenizer, the chat template and the task prompts; imports nothing above it."""
