"""The domain: models, threading, contacts, conversations, assignment, actions, queries."""
