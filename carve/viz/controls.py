"""The viewer's mouse controls, toggles and actions, as text: the window shows it (the "Controls"
action), ``carve view --help`` lists it. Importing this module costs nothing (the command line builds
its help from it)."""

__all__ = ["CONTROLS"]

#: the viewer's controls, as the window's "Controls" action shows them (and ``carve view --help`` lists them)
CONTROLS = """\
viewer controls (Open3D's O3DVisualizer):
  left drag              rotate                  wheel or shift + left drag   zoom
  ctrl + left drag       pan (or right drag)     shift + wheel                field of view
  ctrl + shift + drag    roll                    double-click                 turn around that point
  middle drag            move the light
toggles (panel on the right, Actions > Show Settings):
  one checkbox per group (mesh, grid, points, cameras, images) and per geometry; the actions
  "Toggle GROUP" show or hide a whole group; view names follow their cameras' frustums
actions (panel buttons, and the Actions menu):
  Reset view             back to the first view (framed on the object)
  Previous / Next camera look through a camera: its pose, its field of view, its photograph
  Controls               show these controls
close: the window's close button, File > Close Window, or Ctrl+C in the terminal"""
