"""The Textual dashboard (`herd dash`) and model picker: clients of the management API."""
