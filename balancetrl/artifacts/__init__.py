"""What a run leaves behind: its summary (`run_summary`), plots (`plots`), model card (`model_card`) and the push of
all of it to the Hub (`hub_push`)."""
