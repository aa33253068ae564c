"""The web console of `reconcile serve`, under /ui/: agents, sync runs and their plans, chat sessions, and
chat with an agent. Pages are rendered on the server (Jinja2) and read without JavaScript; a little
plain JavaScript streams chat replies and refreshes tables. Read-only for agents: Git is where they change.
"""
