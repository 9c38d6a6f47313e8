"""Left-right symmetry of MediaPipe's 468-point face mesh: the index of each point's mirror image.

Computed by tools/mesh_symmetry.py from the 3-D meshes of the four frontal test photos (each
mesh reflected in its own best mirror plane, points matched by a least-cost assignment summed over
the photos); the result is an involution and pairs the known landmarks (eye corners 33/263 and
133/362, mouth corners 61/291, cheeks 234/454) and keeps the midline (nose tip 1, lips 13/14).
"""

from __future__ import annotations

import cv2
import numpy as np

_MIDLINE = """
0 1 2 4 5 6 8 9 10 11 12 13 14 15 16 17 18 19 94 151 152 164 168 175 195 197 199 200
"""
_PAIRS = """
3:248 7:249 20:250 21:251 22:252 23:253 24:254 25:255 26:256 27:257 28:258 29:259 30:260 31:261
32:262 33:263 34:264 35:265 36:266 37:267 38:268 39:269 40:270 41:271 42:272 43:273 44:274 45:275
46:276 47:277 48:278 49:279 50:280 51:281 52:282 53:283 54:284 55:285 56:286 57:287 58:288 59:289
60:290 61:291 62:292 63:293 64:294 65:295 66:296 67:297 68:298 69:299 70:300 71:301 72:302 73:303
74:304 75:305 76:306 77:307 78:308 79:309 80:310 81:311 82:312 83:313 84:314 85:315 86:316 87:317
88:318 89:319 90:320 91:321 92:322 93:323 95:324 96:325 97:326 98:327 99:328 100:329 101:330 102:331
103:332 104:333 105:334 106:335 107:336 108:337 109:338 110:339 111:340 112:341 113:342 114:343
115:344 116:345 117:346 118:347 119:348 120:349 121:350 122:351 123:352 124:353 125:354 126:355
127:356 128:357 129:358 130:359 131:360 132:361 133:362 134:363 135:364 136:365 137:366 138:367
139:368 140:369 141:370 142:371 143:372 144:373 145:374 146:375 147:376 148:377 149:378 150:379
153:380 154:381 155:382 156:383 157:384 158:385 159:386 160:387 161:388 162:389 163:390 165:391
166:392 167:393 169:394 170:395 171:396 172:397 173:398 174:399 176:400 177:401 178:402 179:403
180:404 181:405 182:406 183:407 184:408 185:409 186:410 187:411 188:412 189:413 190:414 191:415
192:416 193:417 194:418 196:419 198:420 201:421 202:422 203:423 204:424 205:425 206:426 207:427
208:428 209:429 210:430 211:431 212:432 213:433 214:434 215:435 216:436 217:437 218:438 219:439
220:440 221:441 222:442 223:443 224:444 225:445 226:446 227:447 228:448 229:449 230:450 231:451
232:452 233:453 234:454 235:455 236:456 237:457 238:458 239:459 240:460 241:461 242:462 243:463
244:464 245:465 246:466 247:467
"""


def symmetry_map() -> np.ndarray:
    """(468,) int64: ``sym[i]`` is the point mirroring point ``i`` (``sym[sym[i]] == i``)."""
    sym = np.arange(468, dtype=np.int64)
    for token in _PAIRS.split():
        a, b = (int(v) for v in token.split(":"))
        sym[a], sym[b] = b, a
    return sym


def midline() -> np.ndarray:
    return np.array([int(v) for v in _MIDLINE.split()], dtype=np.int64)


def frontal(xyz: np.ndarray) -> np.ndarray:
    """(468, 3) the mesh turned so that its mirror plane faces the camera (yaw and roll taken
    out, about its centroid).

    A face turned by R has a mirror image (x flipped, points swapped by the symmetry map) turned
    by S·R·S; the rotation between the two is S·R·S·Rᵀ, twice the yaw and roll, so half of it
    undoes them. Pitch keeps the mirror plane and stays.
    """
    from swaprtc.embedded.shape import similarity_3d  # shape.py needs this module's neighbours

    p = xyz.astype(np.float64) - xyz.mean(axis=0)
    mirrored = p[symmetry_map()] * np.array([-1.0, 1.0, 1.0])
    _, rot, _ = similarity_3d(p, mirrored)
    rvec, _ = cv2.Rodrigues(rot)
    half, _ = cv2.Rodrigues(rvec / 2)
    return p @ half.T
