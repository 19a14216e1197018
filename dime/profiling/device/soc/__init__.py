"""System-on-chip (Jetson) operating-point controllers."""
