"""Memory of past interactions: interactions, entity facts, recall, feedback, retention."""
