"""ESC/POS receipt printer: status codec, driver (python-escpos over our URL), simulator."""
