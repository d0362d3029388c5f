"""What a run stands on, checked before it trains: the CPU's bf16 support (`cpu`), the distributed engine that really
runs (`engines`), work done once on the main process (`distributed`), and the installed TRL/transformers private
surface the trainer relies on (`compat`)."""
