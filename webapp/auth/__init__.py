"""Users, login, logout, first-run setup and the create-user command."""
