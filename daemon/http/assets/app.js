// The dashboard's script (being written).
