"""What runs show and write: here, the predictions' CSV and picture, shared by the command's Lightning writer and
predictions from an exported model (which import no torch)."""
