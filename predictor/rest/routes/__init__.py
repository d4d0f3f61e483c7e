"""Routes of the original service's surface that kserve has no counterpart for."""
