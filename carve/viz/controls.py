"""The viewer's keys and mouse controls, as text: the window prints it on ``H``, ``carve view --help``
lists it. Importing this module costs nothing (the command line builds its help from it)."""

__all__ = ["CONTROLS"]

#: the viewer's controls, as ``H`` prints them (and ``carve view --help`` lists them)
CONTROLS = """\
viewer controls:
  left drag              rotate          wheel           zoom
  ctrl + left drag       pan             middle drag     pan
  shift + left drag      roll            [ / ]           narrower / wider field of view
  R                      back to the first view (framed on the object)
  W                      wireframe       L               lighting on / off
  + / -                  point size      ctrl + + / -    line width (camera frustums)
  S                      flat / smooth shading           B               back faces on / off
  P                      screenshot (PNG in the current directory)
  H                      print these controls
  Q or Esc               close the window (Ctrl+C in the terminal closes it too)"""
