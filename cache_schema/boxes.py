"""The one 3D box convention used in the cache, by the teachers and by the student.

A box row is (x, y, z, l, w, h, yaw, vx, vy) in the LiDAR frame of its sample:
- (x, y, z) is the box's gravity centre (nuScenes' convention; mmdet3d's LiDAR boxes use the bottom
  centre, so z_bottom = z - h / 2 when talking to mmdet3d);
- l, w, h are the sizes along the box's own x (heading), y and z axes (nuScenes `wlh` reordered);
- yaw is the heading angle about +z, counter-clockwise from +x, in radians;
- vx, vy is the velocity in m/s in the LiDAR frame (NaN in nuScenes becomes 0).
"""
BOX_DIM = 9
BOX_FIELDS = ("x", "y", "z", "l", "w", "h", "yaw", "vx", "vy")
