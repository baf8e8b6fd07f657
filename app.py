"""Start the demo: ``python app.py [--host 127.0.0.1] [--port 7860] [--local-devices]``.

Also the Hugging Face Space entry point (``app_file: app.py``): there the server has no
camera or microphone, capture comes from the browser, and the Space sets
GRADIO_SERVER_NAME=0.0.0.0, which becomes the default host.
"""

from app.ui import main

if __name__ == "__main__":
    main()
