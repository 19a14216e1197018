"""CPU operating-point controllers."""
