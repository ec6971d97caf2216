"""Tests of appliance.tray: the menu model (pystray's dummy backend), the icon, and a real tray under Xvfb."""
